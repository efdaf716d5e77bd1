"""The localmodel operator: LocalModel resources → backend Deployments, Services and model caches."""
