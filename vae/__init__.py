"""vae: variational autoencoders for images, trained with Hydra and logged to TensorBoard."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `vae.load_run` without importing torch at `import vae` time.
    if name == "load_run":
        from vae.runs import load_run

        return load_run
    raise AttributeError(f"module 'vae' has no attribute {name!r}")
