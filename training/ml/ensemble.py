"""An ensemble of trained classifiers as one Keras model: the members' probabilities, averaged.

Each member keeps its own preprocessing (it lives inside each model), so members of different
architectures and normalisations combine freely as long as they take the same input size and
predict the same classes in the same order. The result saves and loads like any model
(safe_mode=True), so an ensemble is registered, promoted and served like any other version.
"""

import keras


def build_ensemble(members, name="ensemble"):
    """keras.Model averaging the softmax outputs of ``members`` (two or more built or loaded models)."""
    members = list(members)
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two models")
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(f"members take different input shapes: {sorted(shapes)}")
    outputs = {tuple(member.outputs[0].shape[1:]) for member in members}
    if len(outputs) != 1:
        raise ValueError(f"members predict different numbers of classes: {sorted(outputs)}")
    inputs = keras.Input(shape=shapes.pop(), dtype="float32", name="image")
    # Each member as a nested model under its own name (two MobileNetV2s are both "mobilenetv2").
    wrapped = [keras.Model(member.inputs[0], member.outputs[0], name=f"member_{i}_{member.name}")
               for i, member in enumerate(members, start=1)]
    averaged = keras.layers.Average(name="predictions")([member(inputs) for member in wrapped])
    return keras.Model(inputs, averaged, name=name)
