"""End-to-end journeys: ``gitops-bot serve``, the fake forge and the local Kubernetes API server
as separate processes, wired only by URLs and settings (``harness.py``)."""
