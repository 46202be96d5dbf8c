from django.core.management.base import BaseCommand, CommandError

from training import services


class Command(BaseCommand):
    help = (
        "Train one or more architectures on a labelled image folder (<DIR>/<Class>/*.jpg), evaluate each on "
        "the held-out test split, register each as a model version and print a comparison table. "
        "Re-running with the same --output resumes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, metavar="DIR",
                            help="labelled image folder with Benign/Early/Pre/Pro sub-folders")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--arch", nargs="+", metavar="ARCH",
                           help=f"architecture(s): {', '.join(services.KNOWN_ARCHITECTURES)}")
        which.add_argument("--all", action="store_true",
                           help=f"the study's four: {', '.join(services.STUDY_ARCHITECTURES)}")
        parser.add_argument("--epochs", type=int, default=services.DEFAULT_EPOCHS)
        parser.add_argument("--image-size", type=int, default=224, help="square input size in pixels")
        parser.add_argument("--split", choices=services.SPLIT_MODES, default="grouped",
                            help="grouped: blocks of consecutive file numbers (≈ patients); random: image level")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
        parser.add_argument("--per-image-colour", action="store_true",
                            help="standardise each image's R, G, B inside the model, so it cannot learn the "
                                 "stain's average colour")
        parser.add_argument("--grayscale-augment", type=float, default=0.0, metavar="P",
                            help="probability of turning a training image gray, so the model also learns "
                                 "from shape and texture (default 0: never)")
        parser.add_argument("--stain-augment", type=float, default=0.0, metavar="SIGMA",
                            help="jitter each training image's stain amounts in optical density by up to "
                                 "SIGMA (0.05: 'HED-light'), so the model meets other labs' stains "
                                 "(default 0: off)")
        parser.add_argument("--learning-rate", type=float,
                            help="Adam's initial learning rate, where the cosine schedule starts "
                                 "(default: 1e-3, and 1e-4 for vgg19, which has no normalisation layers)")
        parser.add_argument("--promote", choices=services.PROMOTE_CHOICES,
                            help="best: activate the model with the best validation accuracy")
        parser.add_argument("--weights-dir", metavar="DIR", help="folder of local ImageNet 'notop' weight files")
        parser.add_argument("--max-per-class", type=int, metavar="N", help="first N images per class (smoke runs)")
        parser.add_argument("--output", metavar="DIR", help="work folder; re-running with the same one resumes")

    def handle(self, *args, **options):
        from django.conf import settings

        archs = list(services.STUDY_ARCHITECTURES) if options["all"] else options["arch"]
        request = services.RetrainOptions(
            data_dir=options["data"], architectures=archs, epochs=options["epochs"],
            image_size=options["image_size"], split_mode=options["split"], seed=options["seed"],
            batch_size=options["batch_size"], augment=not options["no_augment"], promote=options["promote"],
            per_image_colour=options["per_image_colour"], learning_rate=options["learning_rate"],
            grayscale_augment=options["grayscale_augment"], stain_augment=options["stain_augment"],
            weights_dir=options["weights_dir"] or settings.LOCAL_WEIGHTS_DIR or None,
            max_per_class=options["max_per_class"], output_dir=options["output"],
        )
        verbosity = options["verbosity"]
        progress = False if verbosity == 0 else (2 if verbosity == 1 else True)
        try:
            result = services.retrain(request, log=self.stdout.write, progress=progress)
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(v.name for v in result.versions)
        self.stdout.write(self.style.SUCCESS(f"Registered {len(result.versions)} model version(s): {names}"))
