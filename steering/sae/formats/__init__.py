"""One converter per SAE format, each in the module named as the format is in `steering.sae.names`.

Every module exposes `FORMAT`, an `SAEFormat` (its identifying files and `convert`, which turns a
weights file's config and tensor headers into a `Layout`); `steering.sae.registry` collects them.
"""
