"""Which in-model colour normalisation (ml.architectures.NORMALISATIONS) a recipe's colour switches
name, and back. No Keras: `retrain`'s options and the pipeline's command line both use it."""

# normalisation -> the switches (RetrainOptions fields, pipeline flags) that select it
SWITCHES = {
    None: {},
    "per_image": {"per_image_colour": True},
    "per_image_lab": {"lab_colour": True},
    "per_image_balanced_lab": {"lab_colour": True, "balance_colour": True},
}


def from_switches(per_image_colour=False, lab_colour=False, balance_colour=False):
    """The normalisation the switches select (None: the architecture's own); ValueError when they
    contradict each other."""
    if per_image_colour and lab_colour:
        raise ValueError("Choose --per-image-colour or --lab-colour, not both.")
    if balance_colour and not lab_colour:
        raise ValueError("--balance-colour goes with --lab-colour.")
    if lab_colour:
        return "per_image_balanced_lab" if balance_colour else "per_image_lab"
    return "per_image" if per_image_colour else None
