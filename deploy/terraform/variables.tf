variable "project" {
  type        = string
  description = "Google Cloud project that runs the Dataflow jobs."
}

variable "region" {
  type        = string
  description = "Region of the Dataflow jobs and the scheduler job."
}

variable "job_name" {
  type        = string
  default     = "fimflow-nightly"
  description = "Name of the scheduler job and prefix of the Dataflow job names."
}

variable "schedule" {
  type        = string
  default     = "0 2 * * *"
  description = "Cron schedule of the launches."
}

variable "time_zone" {
  type    = string
  default = "Etc/UTC"
}

variable "template_spec" {
  type        = string
  description = "gs:// path of the Flex Template spec built with `gcloud dataflow flex-template build`."
}

variable "parameters" {
  type        = map(string)
  description = "fimflow options (deploy/metadata.json); put {date} in output for a dataset per run."
}

variable "service_account" {
  type        = string
  description = "Service account the Dataflow workers run as."
}

variable "scheduler_service_account" {
  type        = string
  description = "Service account Cloud Scheduler uses to call the Dataflow API (roles/dataflow.developer)."
}

variable "temp_location" {
  type        = string
  description = "gs:// path for Dataflow temporary files."
}

variable "machine_type" {
  type    = string
  default = "n2-standard-4"
}

variable "max_workers" {
  type    = number
  default = 100
}
