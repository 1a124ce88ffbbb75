# Everything fimflow needs in a Google Cloud project: the APIs, the bucket,
# the image repository, the workers' and the scheduler's service accounts with
# their roles, and a Cloud Scheduler job that launches the fimflow Flex
# Template on a schedule. The image and the template are built afterwards
# (deploy/README.md, steps 1 and 2); the schedule only names the template.
#
# Each scheduled run writes a new dataset (the output parameter holds
# {datetime}, which fimflow replaces at launch); a run never overwrites a
# complete dataset and a failed run leaves no metadata.json.

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

locals {
  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "storage.googleapis.com",
  ]
  bucket        = var.create_bucket ? google_storage_bucket.fimflow[0].name : var.bucket
  template_spec = coalesce(var.template_spec, "gs://${var.bucket}/templates/fimflow.json")
  worker        = "serviceAccount:${google_service_account.worker.email}"
  scheduler     = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

resource "google_storage_bucket" "fimflow" {
  count                       = var.create_bucket ? 1 : 0
  name                        = var.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  depends_on                  = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "fimflow" {
  repository_id = "fimflow"
  location      = var.region
  format        = "DOCKER"
  description   = "fimflow worker and Flex Template launcher images"
  depends_on    = [google_project_service.apis]
}

# The workers: Dataflow work, the bucket, the image.
resource "google_service_account" "worker" {
  account_id   = "fimflow-worker"
  display_name = "fimflow Dataflow workers"
}

resource "google_project_iam_member" "worker_dataflow" {
  project = var.project
  role    = "roles/dataflow.worker"
  member  = local.worker
}

resource "google_storage_bucket_iam_member" "worker_bucket" {
  bucket = local.bucket
  role   = "roles/storage.objectAdmin"
  member = local.worker
}

resource "google_artifact_registry_repository_iam_member" "worker_image" {
  location   = google_artifact_registry_repository.fimflow.location
  repository = google_artifact_registry_repository.fimflow.name
  role       = "roles/artifactregistry.reader"
  member     = local.worker
}

# The scheduler: launches jobs, reads the template spec, and acts as the workers' account.
resource "google_service_account" "scheduler" {
  account_id   = "fimflow-scheduler"
  display_name = "fimflow scheduled launches"
}

resource "google_project_iam_member" "scheduler_dataflow" {
  project = var.project
  role    = "roles/dataflow.developer"
  member  = local.scheduler
}

resource "google_storage_bucket_iam_member" "scheduler_bucket" {
  bucket = local.bucket
  role   = "roles/storage.objectViewer"
  member = local.scheduler
}

resource "google_service_account_iam_member" "scheduler_acts_as_worker" {
  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.scheduler
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
      template_spec   = local.template_spec
      parameters      = var.parameters
      service_account = google_service_account.worker.email
      temp_location   = "gs://${local.bucket}/tmp"
      machine_type    = var.machine_type
      max_workers     = var.max_workers
      region          = var.region
    }))

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.scheduler_dataflow,
    google_service_account_iam_member.scheduler_acts_as_worker,
  ]
}

output "worker_service_account" {
  value = google_service_account.worker.email
}

output "image_repository" {
  value = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.fimflow.repository_id}"
}
