# Plain resources of the Google provider only (no registry modules), so platform teams can
# review every resource. Infrastructure Manager runs Terraform 1.2.3 to 1.5.7
# (cloud.google.com/infrastructure-manager/docs/terraform): nothing here needs more than 1.3,
# and there is no backend block (Infrastructure Manager keeps the state itself; with the
# Terraform CLI, add a gcs backend of your own if the state must be shared).
terraform {
  required_version = ">= 1.3"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 5.x: budget_filter.labels as a map, public_access_prevention, rotation_period.
      version = ">= 5.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
  # The Billing Budgets API refuses user credentials (ADC) without a quota project: the
  # provider's docs for google_billing_budget ask for billing_project with
  # user_project_override. The caller needs serviceusage.services.use on it.
  billing_project       = var.project
  user_project_override = true
}
