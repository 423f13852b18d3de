"""Recommendation library shared by the pipelines and the service: LightFM scoring, ranking
metrics and group playlists."""
