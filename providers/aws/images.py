"""AWS PyTorch training containers (Deep Learning Containers), resolved offline.

Which image and what is in it comes from the image catalog (providers/images.yaml);
here, where it lives: the region's DLC registry. Most regions share one account, the
rest are listed (from the SageMaker Python SDK's image_uri_config for pytorch,
checked 2026-11).
"""

from __future__ import annotations

from providers import images

DEFAULT_ACCOUNT = "763104351884"
REGION_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}


def training_image(
    region: str, kind: str, gpu: bool, explicit: str | None
) -> tuple[str, tuple[str, ...]]:
    """The image URI for a SageMaker job kind in a region, and the plan's notes on it."""
    account = REGION_ACCOUNTS.get(region, DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    fill = {"account": account, "region": region, "domain": domain}
    return images.choose("aws", kind, gpu, explicit, "compute.aws.image", **fill)
