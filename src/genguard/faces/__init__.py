"""Likeness protection from pixels: a registry of protected persons' face embeddings.

``genguard persons add NAME --photo a.jpg`` stores face embeddings (never photos); the
``faces`` detector backend then finds faces in every checked frame, matches them against
the registry and emits ``real_person`` with evidence naming the person, so the
``sexual_real_person`` hard rule blocks a sexual deepfake of a registered person under
every profile, even when there is no prompt. See ``docs/faces.md``.

Submodules: :mod:`~genguard.faces.model` (dlib wrapper), :mod:`~genguard.faces.index`
(vectorised nearest match), :mod:`~genguard.faces.reference` (reference photos),
:mod:`~genguard.faces.registry` (the store).
"""
