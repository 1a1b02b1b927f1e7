"""Amazon Web Services: SageMaker training jobs and HyperPod clusters.

sdk.py (the only SDK importer) · settings.py (compute.aws + environment, capabilities)
· storage.py (S3) · images.py (training containers) · training_job.py · hyperpod.py
"""
