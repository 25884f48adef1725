"""Integrations: genguard where images are made (diffusers pipelines, ...).

Each integration imports its framework lazily, so ``import genguard.integrations`` costs
nothing and the core never depends on torch or diffusers.
"""
