#!/usr/bin/env python3
"""Plain S3 multipart transfer of one file with boto3, the yardstick of bench.sh's S3 section.

  s3plain.py upload FILE BUCKET KEY
  s3plain.py download BUCKET KEY FILE

The server and credentials come from the environment like strongbox's: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION. Transfers run as many requests at
once as strongbox's do: uploads 8 MiB parts, 4 threads (strongbox's --part-size 8
--upload-concurrency 4); downloads 8 MiB parts, 8 threads (strongbox fetches 8 MiB
ranges, eight ahead of the one it reads). Path-style
addressing, and no extra checksums (boto3 >= 1.36 would otherwise add a CRC32 to every
part, which strongbox does not compute). Prints the transfer's own wall time (without
Python's start-up and the boto3 import) on stderr.
"""

import os
import sys
import time


def main(argv):
    t_start = time.perf_counter()
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    MiB = 1024 * 1024
    extra = {}
    try:
        # botocore >= 1.36 knows these; older ones neither compute nor accept them.
        Config(request_checksum_calculation="when_required")
        extra = {"request_checksum_calculation": "when_required",
                 "response_checksum_validation": "when_required"}
    except TypeError:
        pass
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                    retries={"max_attempts": 3, "mode": "standard"}, **extra)
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                      region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)
    transfer = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                              max_concurrency=4 if argv[0] == "upload" else 8,
                              use_threads=True)
    t0 = time.perf_counter()
    if argv[0] == "upload":
        path, bucket, key = argv[1:4]
        s3.upload_file(path, bucket, key, Config=transfer)
    elif argv[0] == "download":
        bucket, key, path = argv[1:4]
        s3.download_file(bucket, key, path, Config=transfer)
    else:
        sys.exit(f"unknown command {argv[0]!r} (upload, download)")
    t1 = time.perf_counter()
    size = os.path.getsize(path)
    print(f"s3plain {argv[0]}: {size} bytes in {t1 - t0:.2f} s "
          f"({size / MiB / max(t1 - t0, 1e-9):.1f} MiB/s); start-up and import {t0 - t_start:.2f} s",
          file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1:])
