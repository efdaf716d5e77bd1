"""Local mode: LocalModel manifests served on one machine, backends as supervised processes."""
