# Filled by `recipe infra plan --provider gcp` from a recipe (its tags, cost center and
# budget) and --set flags; or write terraform.tfvars by hand.

variable "project" {
  description = "Project ID the bucket, key, service account and billing dataset live in."
  type        = string
}

variable "region" {
  description = "Region of the bucket and the key ring (the same region Vertex AI jobs run in)."
  type        = string
  default     = "us-central1"
}

variable "prefix" {
  description = "Name prefix: 3-20 lower-case letters, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3-20 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "The recipe's tags mapped to GCP label rules; put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "cost_center" {
  description = "The cost center the budget filters on (label cost_center)."
  type        = string
}

variable "monthly_budget" {
  description = "Monthly budget in whole units of var.currency."
  type        = number

  validation {
    condition     = var.monthly_budget > 0
    error_message = "monthly_budget must be positive."
  }
}

variable "currency" {
  description = "ISO 4217 code; must be the billing account's currency, or the Budgets API refuses it."
  type        = string
  default     = "USD"
}

variable "billing_account" {
  description = "Billing account ID (XXXXXX-XXXXXX-XXXXXX) the budget is created on."
  type        = string
}

variable "alert_emails" {
  description = "E-mail addresses for budget alerts (at most 5: a budget takes 5 channels). Empty: billing admins only."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.alert_emails) <= 5
    error_message = "A budget takes at most 5 notification channels."
  }
}

variable "billing_export_location" {
  description = "Location of the billing export dataset. A multi-region (US, EU) gets last month's data backfilled; a region only data from the day the export is enabled."
  type        = string
  default     = "US"
}
