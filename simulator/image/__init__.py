"""Build the ``dxg-sim:local`` image from host files: ``python -m simulator.image``.

This subpackage runs on the host (venv) only and is not copied into the image.
"""
