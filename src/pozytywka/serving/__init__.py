"""The FastAPI service: group playlists, skip predictions and personalisation endpoints over the
artifacts the pipelines saved, with A/B testing and a durable prediction log (docs/serving.md)."""
