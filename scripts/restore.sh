#!/usr/bin/env bash
# Restore a scripts/backup.sh folder into an EMPTY database (create it first: createdb) and empty
# media and model folders, after checking every file's SHA-256. Then run `python manage.py migrate`
# (a backup of an older version is upgraded like any deployment) and start the services.
#
#   DATABASE_URL=postgres://telediag@db:5432/telediag_restored MEDIA_ROOT=/app/var/media \
#   TELEDIAG_MODEL_DIR=/app/var/models scripts/restore.sh /backups/telediag-2026-12-05
set -euo pipefail

src="${1:?usage: restore.sh BACKUP_FOLDER}"
: "${DATABASE_URL:?DATABASE_URL must name the (empty) database to restore into}"
if [[ -n "${DATABASE_PASSWORD_FILE:-}" ]]; then
  PGPASSWORD="$(<"$DATABASE_PASSWORD_FILE")"; export PGPASSWORD
elif [[ -n "${DATABASE_PASSWORD:-}" ]]; then
  export PGPASSWORD="$DATABASE_PASSWORD"
fi

(cd "$src" && sha256sum --check --quiet SHA256SUMS) || {
  echo "restore.sh: $src is damaged (SHA-256 mismatch); nothing was restored" >&2
  exit 1
}
tables="$(psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -tAc \
  "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")"
if [[ "$tables" != "0" ]]; then
  echo "restore.sh: the database already has $tables tables; restore into an empty one" >&2
  exit 1
fi
for part in media:"${MEDIA_ROOT:-}" models:"${TELEDIAG_MODEL_DIR:-}"; do
  name="${part%%:*}" folder="${part#*:}"
  if [[ -f "$src/$name.tar.gz" ]]; then
    if [[ -z "$folder" ]]; then
      echo "restore.sh: the backup has $name files; set $([[ $name == media ]] && echo MEDIA_ROOT || echo TELEDIAG_MODEL_DIR)" >&2
      exit 1
    fi
    if [[ -d "$folder" && -n "$(ls -A "$folder")" ]]; then
      echo "restore.sh: $folder is not empty; restore into an empty folder" >&2
      exit 1
    fi
  fi
done

pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname "$DATABASE_URL" \
  "$src/database.dump"
for part in media:"${MEDIA_ROOT:-}" models:"${TELEDIAG_MODEL_DIR:-}"; do
  name="${part%%:*}" folder="${part#*:}"
  if [[ -f "$src/$name.tar.gz" ]]; then
    mkdir -p "$folder"
    tar -C "$folder" -xzf "$src/$name.tar.gz"
  fi
done
echo "restore.sh: restored $src; now run: python manage.py migrate"
