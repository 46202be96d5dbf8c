"""Run by test_upload_memory in a fresh process: validate files at once, print the peak memory.

python -m tests.security.upload_memory_probe FILE... → JSON {"peak_delta_mb", "outcomes"}
(the peak resident size while the uploads are checked, above what the process had before).
"""

import io
import json
import os
import resource
import sys
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telediag.settings_test")


def main(paths):
    import django

    django.setup()
    from cases.uploads import InvalidImage, validate_upload

    contents = [open(path, "rb").read() for path in paths]
    outcomes = [None] * len(contents)

    def check(index):
        handle = io.BytesIO(contents[index])
        handle.name = os.path.basename(paths[index])
        try:
            outcomes[index] = ["stored", validate_upload(handle).size_bytes]
        except InvalidImage as exc:
            outcomes[index] = ["refused", str(exc)]

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    threads = [threading.Thread(target=check, args=(i,)) for i in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_delta_mb": (peak - before) / 1024, "outcomes": outcomes}))


if __name__ == "__main__":
    main(sys.argv[1:])
