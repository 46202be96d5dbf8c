"""Plain Keras training package for Telediag (no Django imports anywhere in here).

Kept import-light on purpose: importing ``ml`` or ``ml.classes`` must not pull in
Keras/TensorFlow, so Django code can read class names without paying for a backend import.
Modules, one concern each:

- ``classes``       class names, human labels, folder aliases
- ``images``        the single image-preparation function shared by training and serving
- ``dataset``       scanning and loading a ``<root>/<ClassFolder>/*`` image folder
- ``splits``        random / patient-block (grouped) splits, reproducible from a JSON record
- ``augmentation``  training-only random augmentation layers
- ``layers``        custom serialisable layers (registered under the "telediag" package)
- ``architectures`` ``build_model`` for each supported architecture
- ``train``         ``train_model`` (checkpointing, early stopping, resumable)
- ``evaluate``      metrics (accuracy, F1, confusion matrix, ECE) and a comparison table
- ``plots``         training curves and confusion-matrix PNGs
- ``smear_check``   "is this a stained blood smear at all?" (fitted on the training split by
                    ``pipeline``; its parameters travel in metadata.json)
- ``artifacts``     atomic model/metadata writing and sha256-verified loading
- ``pipeline``      ``run_training`` end to end, and a CLI (``python -m ml.pipeline``)
"""
