output "bucket" {
  description = "The recipes bucket: use gs://<bucket>/fine-tunes as compute.gcp.staging_bucket."
  value       = google_storage_bucket.recipe.name
}

output "kms_key" {
  description = "The bucket's default CMEK key."
  value       = google_kms_crypto_key.storage.id
}

output "service_account" {
  description = "Jobs and endpoints run as this service account (compute.gcp.service_account)."
  value       = google_service_account.jobs.email
}

output "budget" {
  description = "The monthly budget on the cost center."
  value       = google_billing_budget.cost_center.name
}

output "billing_export_dataset" {
  description = "Dataset for the Cloud Billing export (PROJECT:DATASET). Enable the export in the console: Terraform cannot."
  value       = google_bigquery_dataset.billing_export.id
}
