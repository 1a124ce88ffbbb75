# A Cloud Scheduler job that launches the fimflow Flex Template on a schedule.
# Each run writes to a new dated output (the output parameter holds {date},
# which fimflow replaces at launch); a run never overwrites a complete dataset
# and a failed run leaves no metadata.json.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

resource "google_cloud_scheduler_job" "fimflow" {
  name        = var.job_name
  description = "Builds FIM training data with fimflow on Dataflow"
  schedule    = var.schedule
  time_zone   = var.time_zone
  region      = var.region

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project}/locations/${var.region}/flexTemplates:launch"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(templatefile("${path.module}/launch_body.json.tftpl", {
      job_name        = var.job_name
      template_spec   = var.template_spec
      parameters      = var.parameters
      service_account = var.service_account
      temp_location   = var.temp_location
      machine_type    = var.machine_type
      max_workers     = var.max_workers
      region          = var.region
    }))

    oauth_token {
      service_account_email = var.scheduler_service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
}
