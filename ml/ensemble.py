"""An ensemble of trained classifiers as one Keras model: the members' probabilities, averaged.

Each member keeps its own preprocessing (it lives inside each model), so members of different
architectures and normalisations combine freely as long as they predict the same classes in the
same order. The ensemble takes the largest input size among its members; a member trained on
smaller images gets the prepared image scaled down to its size inside the ensemble (bilinear, with
antialiasing: close to, not bit-equal with, preparing the original at that size). The result saves
and loads like any model (safe_mode=True), so an ensemble is registered, promoted and served like
any other version.
"""

import keras


def _square_size(model):
    height, width, channels = tuple(model.inputs[0].shape[1:])
    if height != width or channels != 3:
        raise ValueError(f"members take square RGB images; {model.name} takes {height}x{width}x{channels}")
    return int(height)


def build_ensemble(members, name="ensemble"):
    """keras.Model averaging the softmax outputs of ``members`` (two or more built or loaded models)."""
    members = list(members)
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two models")
    sizes = [_square_size(member) for member in members]
    outputs = {tuple(member.outputs[0].shape[1:]) for member in members}
    if len(outputs) != 1:
        raise ValueError(f"members predict different numbers of classes: {sorted(outputs)}")
    size = max(sizes)
    inputs = keras.Input(shape=(size, size, 3), dtype="float32", name="image")
    # Each member as a nested model under its own name (two MobileNetV2s are both "mobilenetv2").
    wrapped = [
        keras.Model(member.inputs[0], member.outputs[0], name=f"member_{i}_{member.name}")
        for i, member in enumerate(members, start=1)
    ]
    probabilities = []
    for i, (member, member_size) in enumerate(zip(wrapped, sizes), start=1):
        x = inputs
        if member_size != size:
            x = keras.layers.Resizing(
                member_size, member_size, interpolation="bilinear", antialias=True, name=f"resize_for_member_{i}"
            )(x)
        probabilities.append(member(x))
    averaged = keras.layers.Average(name="predictions")(probabilities)
    return keras.Model(inputs, averaged, name=name)
