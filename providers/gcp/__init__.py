"""Google Cloud: Vertex AI custom jobs.

sdk.py (the only SDK importer) · settings.py (compute.gcp + environment, capabilities)
· storage.py (Cloud Storage; gs:// reads) · custom_job.py
"""
