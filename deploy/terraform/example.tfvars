project = "my-project"
region  = "europe-west4"
bucket  = "my-bucket"
parameters = {
  input          = "gs://my-bucket/corpus/*.jsonl.zst"
  output         = "gs://my-bucket/fim/{datetime}"
  tokenizer      = "gs://my-bucket/models/code.model"
  context_length = "4096"
  fim_rate       = "0.5"
  seed           = "1"
}
