#!/usr/bin/env bash
# Back up Telediag: the PostgreSQL database (pg_dump, custom format) and the media and model
# folders (tar), into a new folder with their SHA-256 sums. Restore with scripts/restore.sh.
#
#   DATABASE_URL=postgres://telediag@db:5432/telediag DATABASE_PASSWORD_FILE=/run/secrets/db_password \
#   MEDIA_ROOT=/app/var/media TELEDIAG_MODEL_DIR=/app/var/models scripts/backup.sh /backups/telediag-2026-12-05
#
# With S3 (TELEDIAG_S3_BUCKET) images and models are in the bucket: back it up with the store's own
# versioning or replication; leave MEDIA_ROOT and TELEDIAG_MODEL_DIR unset here.
# pg_dump must be of the server's major version or newer (the image has PostgreSQL 15's).
set -euo pipefail

dest="${1:?usage: backup.sh NEW_FOLDER}"
: "${DATABASE_URL:?DATABASE_URL must name the database to back up}"
if [[ -n "${DATABASE_PASSWORD_FILE:-}" ]]; then
  PGPASSWORD="$(<"$DATABASE_PASSWORD_FILE")"; export PGPASSWORD
elif [[ -n "${DATABASE_PASSWORD:-}" ]]; then
  export PGPASSWORD="$DATABASE_PASSWORD"
fi
if [[ -e "$dest" ]]; then
  echo "backup.sh: $dest exists; give a new folder" >&2
  exit 2
fi
# Written beside the destination, renamed at the end: a failed backup never looks complete.
tmp="$dest.partial"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp" && mkdir -p "$tmp"

pg_dump --format=custom --no-owner --no-privileges --file "$tmp/database.dump" "$DATABASE_URL"
for part in media:"${MEDIA_ROOT:-}" models:"${TELEDIAG_MODEL_DIR:-}"; do
  name="${part%%:*}" folder="${part#*:}"
  if [[ -n "$folder" && -d "$folder" ]]; then
    tar -C "$folder" -czf "$tmp/$name.tar.gz" .
  fi
done
(cd "$tmp" && sha256sum -- * > SHA256SUMS)
mv "$tmp" "$dest"
trap - EXIT
echo "backup.sh: $(ls "$dest" | tr '\n' ' ')in $dest"
