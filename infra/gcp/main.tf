# A Google Cloud project set up the way recipes (Vertex AI custom jobs, endpoints, releases)
# and `recipe cost report` need it: a CMEK key, a private versioned bucket encrypted with it,
# a service account for jobs and endpoints with the roles they use, a monthly budget on the
# recipe's cost center, and the BigQuery dataset the Cloud Billing export writes to.
#
# Names are fixed from var.prefix and var.project (providers/gcp/infra.py computes the same
# ones, so `recipe infra check` finds them without reading the Terraform state).

locals {
  # Every resource that takes labels gets the recipe's tags, and always the cost center (the
  # budget filters on it; a resource without it is untagged spend in the cost report).
  labels = merge(var.labels, { cost_center = var.cost_center })

  bucket_name     = "${var.prefix}-${var.project}-recipe"
  key_ring_name   = "${var.prefix}-recipe"
  dataset_id      = "${replace(var.prefix, "-", "_")}_billing_export"
  service_account = "${var.prefix}-jobs"

  # APIs the resources below and the recipes use; left on when this is destroyed (other
  # workloads in the project may depend on them).
  services = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "billingbudgets.googleapis.com",
    "cloudkms.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
  ]

  # What the jobs and endpoints service account does at project level (README "Run on
  # Vertex AI" and "Release"): call Vertex AI, write logs, pull the serving image from
  # Artifact Registry, read Cloud Monitoring's prediction metrics for release gates.
  # Bucket access is granted on the bucket alone (google_storage_bucket_iam_member below).
  project_roles = [
    "roles/aiplatform.user",
    "roles/artifactregistry.reader",
    "roles/logging.logWriter",
    "roles/monitoring.viewer",
  ]
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "required" {
  for_each = toset(local.services)

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# --- encryption key ------------------------------------------------------------------------

# A key ring can NEVER be deleted in Cloud KMS (neither can a key: only its versions are
# destroyed). Its name is stable ("<prefix>-recipe"), so re-applying reuses it; a fresh
# state (lost, or another workspace) must `terraform import` it instead of creating it:
#   terraform import google_kms_key_ring.recipe projects/P/locations/R/keyRings/<prefix>-recipe
resource "google_kms_key_ring" "recipe" {
  project  = var.project
  name     = local.key_ring_name
  location = var.region

  depends_on = [google_project_service.required]
}

resource "google_kms_crypto_key" "storage" {
  name     = "${var.prefix}-storage"
  key_ring = google_kms_key_ring.recipe.id
  purpose  = "ENCRYPT_DECRYPT"
  # 90 days: new objects use the new version, old ones stay readable with theirs.
  rotation_period = "7776000s"
  labels          = local.labels

  lifecycle {
    # Destroying the key would make every object in the bucket unreadable.
    prevent_destroy = true
  }
}

# Cloud Storage encrypts with the bucket's default key as its own service agent
# (service-<number>@gs-project-accounts.iam.gserviceaccount.com), which must hold the key's
# encrypter/decrypter role before the bucket names the key.
data "google_storage_project_service_account" "gcs" {
  project = var.project

  depends_on = [google_project_service.required]
}

resource "google_kms_crypto_key_iam_member" "gcs_uses_key" {
  crypto_key_id = google_kms_crypto_key.storage.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# --- bucket --------------------------------------------------------------------------------

resource "google_storage_bucket" "recipe" {
  #checkov:skip=CKV_GCP_62:usage logs need a second bucket to write to; reads and writes of this bucket are audited with Cloud Audit Logs (Data Access logs for storage.googleapis.com), which the organization turns on
  project  = var.project
  name     = local.bucket_name
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.storage.id
  }

  # Checkpoints kept at the bucket's checkpoints/ prefix are only needed while a run can
  # still resume: removed after 30 days.
  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["checkpoints/"]
    }
    action {
      type = "Delete"
    }
  }

  # Versioning keeps every overwritten object (each checkpoint save overwrites the last):
  # noncurrent versions go after 30 days.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gcs_uses_key]
}

# --- service account for jobs and endpoints -------------------------------------------------

resource "google_service_account" "jobs" {
  project      = var.project
  account_id   = local.service_account
  display_name = "recipe jobs and endpoints (${var.prefix})"
  description  = "Runs Vertex AI custom jobs and endpoints launched by `recipe`; cost center ${var.cost_center}."

  depends_on = [google_project_service.required]
}

resource "google_project_iam_member" "jobs" {
  for_each = toset(local.project_roles)

  project = var.project
  role    = each.value
  member  = google_service_account.jobs.member
}

# Inputs, outputs and checkpoints: object admin on this bucket only, not the project.
resource "google_storage_bucket_iam_member" "jobs_objects" {
  bucket = google_storage_bucket.recipe.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.jobs.member
}

# --- budget --------------------------------------------------------------------------------

resource "google_monitoring_notification_channel" "budget" {
  for_each = toset(var.alert_emails)

  project      = var.project
  display_name = "recipe budget ${var.cost_center}: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
  user_labels = local.labels

  depends_on = [google_project_service.required]
}

# On the whole billing account, limited to costs labelled cost_center=<cost center> (every
# project the account pays for: a cost center's runs may live in several). Budgets take no
# labels of their own.
resource "google_billing_budget" "cost_center" {
  billing_account = var.billing_account
  display_name    = substr("${var.prefix} cost center ${var.cost_center}", 0, 60)

  budget_filter {
    labels          = { cost_center = var.cost_center }
    calendar_period = "MONTH"
  }

  amount {
    specified_amount {
      currency_code = var.currency
      units         = tostring(floor(var.monthly_budget))
    }
  }

  threshold_rules {
    threshold_percent = 0.8
    spend_basis       = "CURRENT_SPEND"
  }

  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    monitoring_notification_channels = [for c in google_monitoring_notification_channel.budget : c.id]
    # Billing account admins and users keep getting the e-mails as well.
    disable_default_iam_recipients = false
  }

  depends_on = [google_project_service.required]
}

# --- billing export dataset ----------------------------------------------------------------

# The dataset only: Terraform cannot turn on Cloud Billing export to BigQuery (there is no
# API or resource for it). Enable it in the console, Billing > Billing export > BigQuery
# export, "Detailed usage cost", choosing this project and dataset; the export then creates
# the gcp_billing_export_resource_v1_<ACCOUNT> table here, which `recipe cost report
# bq:PROJECT.DATASET.TABLE` reads.
resource "google_bigquery_dataset" "billing_export" {
  #checkov:skip=CKV_GCP_81:the Cloud Billing export writes this dataset and Google documents no CMEK support for it; a CMEK key would also need a key ring in the dataset's multi-region (US/EU), while the recipe key ring is regional. Billing rows hold costs and labels, no customer data
  project                    = var.project
  dataset_id                 = local.dataset_id
  friendly_name              = "Cloud Billing export (${var.prefix})"
  description                = "Cloud Billing detailed usage cost export, read by `recipe cost report`."
  location                   = var.billing_export_location
  delete_contents_on_destroy = false
  labels                     = local.labels

  depends_on = [google_project_service.required]
}
