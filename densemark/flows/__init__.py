"""Prefect flows over the stage functions (``densemark flow <name>``, ``densemark serve``)."""
