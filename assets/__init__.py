"""Data files shipped with stakes (installed as the resource package ``stakes_assets``)."""
