project                   = "my-project"
region                    = "europe-west4"
template_spec             = "gs://my-bucket/templates/fimflow.json"
service_account           = "fimflow-worker@my-project.iam.gserviceaccount.com"
scheduler_service_account = "fimflow-scheduler@my-project.iam.gserviceaccount.com"
temp_location             = "gs://my-bucket/tmp"
parameters = {
  input          = "gs://my-bucket/corpus/*.jsonl.zst"
  output         = "gs://my-bucket/fim/{date}"
  tokenizer      = "gs://my-bucket/models/code.model"
  context_length = "4096"
  fim_rate       = "0.5"
  seed           = "1"
}
