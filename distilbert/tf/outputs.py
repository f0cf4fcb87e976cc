"""The common output dataclasses, made nestable for ``tf.function``, XLA and Keras.

``tf.function`` only returns structures ``tf.nest`` understands, and Keras (``fit``'s symbolic
build, ``Layer.__call__``) walks outputs with its own ``keras.tree``. Each class here is a subclass
of the matching :mod:`distilbert.common.outputs` dataclass (same fields, ``isinstance`` holds) that
both understand, so ``model(x).logits`` works eagerly, inside ``tf.function`` and under XLA alike.
"""

from __future__ import annotations

import dataclasses

import optree

from distilbert.common import outputs as common


class _Nestable:
    """Flattening protocols: ``tf.nest`` (``__tf_flatten__``) and optree (``tree_flatten``)."""

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def __tf_flatten__(self):
        names = self._names()
        return names, tuple(getattr(self, n) for n in names)

    @classmethod
    def __tf_unflatten__(cls, names, values):
        return cls(**dict(zip(names, values)))

    def tree_flatten(self):
        names = self._names()
        return tuple(getattr(self, n) for n in names), names, names

    @classmethod
    def tree_unflatten(cls, names, values):
        return cls(**dict(zip(names, values)))


def _register_with_keras_tree(cls) -> None:
    # With the TensorFlow backend keras.tree walks structures with optree (a Keras dependency) in its
    # "keras" namespace; keras.tree has no public registration hook, so register there as Keras registers
    # its own containers.
    try:
        optree.register_pytree_node_class(cls, namespace="keras")
    except ValueError:
        pass  # already registered (module reloaded)


def _nestable(base):
    cls = type("TF" + base.__name__, (_Nestable, base), {
        "__doc__": f"{base.__name__} (fields as the reference) that tf.function and Keras can return.",
        "__module__": __name__,
    })
    _register_with_keras_tree(cls)
    return cls


TFBaseModelOutput = _nestable(common.BaseModelOutput)
TFMaskedLMOutput = _nestable(common.MaskedLMOutput)
TFSequenceClassifierOutput = _nestable(common.SequenceClassifierOutput)
TFMultipleChoiceModelOutput = _nestable(common.MultipleChoiceModelOutput)
TFTokenClassifierOutput = _nestable(common.TokenClassifierOutput)
TFQuestionAnsweringModelOutput = _nestable(common.QuestionAnsweringModelOutput)
