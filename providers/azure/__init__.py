"""Azure ML: command jobs on an AmlCompute cluster.

sdk.py (the only SDK importer) · settings.py (compute.azure + environment, capabilities)
· storage.py (the workspace's datastores; azureml:// reads) · command_job.py
"""
