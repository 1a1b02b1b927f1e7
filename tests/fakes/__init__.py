"""Fakes of the cloud services the backends talk to, shared by every test module.

Each fake imitates a real service's wire behaviour (status codes, bodies, headers)
closely enough that the real SDKs run unmodified against it; nothing here replaces
our own provider code. Test modules import from here, never from each other.

- http:        a loopback HTTP server with routes and a record of every request
- aws:         moto (in-process and over HTTP) and BotocoreFake for what moto lacks
- azure:       FakeAzureML: the Azure ML ARM jobs/datastores API and Blob storage
- gcp:         FakeGoogle: Vertex AI custom jobs, Cloud Storage, Cloud Logging
- kubernetes:  FakeKubernetes: the HyperPodPyTorchJob custom resource and pods
"""
