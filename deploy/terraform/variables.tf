variable "project" {
  type        = string
  description = "Google Cloud project that runs the Dataflow jobs."
}

variable "region" {
  type        = string
  description = "Region of the bucket, the image repository, the Dataflow jobs and the scheduler job."
}

variable "bucket" {
  type        = string
  description = "Cloud Storage bucket for corpora, templates, temporary files and datasets."
}

variable "create_bucket" {
  type        = bool
  default     = true
  description = "Create the bucket; false to use an existing one (its IAM bindings are still added)."
}

variable "job_name" {
  type        = string
  default     = "fimflow-nightly"
  description = "Name of the scheduler job and of the Dataflow jobs it launches (one running at a time)."
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
  default     = null
  description = "gs:// path of the Flex Template spec (deploy/README.md step 2); default gs://BUCKET/templates/fimflow.json."
}

variable "parameters" {
  type        = map(string)
  description = "fimflow options (deploy/metadata.json); put {datetime} in output for a dataset per run."
}

variable "machine_type" {
  type    = string
  default = "n2-standard-4"
}

variable "max_workers" {
  type    = number
  default = 100
}
