#!/usr/bin/env sh
# Certificates for the compose cluster's SASL_SSL listeners, made with the openssl CLI into
# DIR (default deploy/docker/certs/, ignored by git): a CA (give ca.pem to clients as ssl.ca.location) and
# one server certificate naming localhost and the three services. Run once before
# `docker compose up`. The key is made readable by the container's user (uid 10001): fine
# for trying Chronik out on one machine, not for production (use your own PKI there).
set -eu
dir=${1:-"$(dirname "$0")/certs"}
mkdir -p "$dir"
cd "$dir"
[ -f kafka.pem ] && { echo "$dir/kafka.pem exists; delete it to make new ones"; exit 0; }
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=chronik-compose-ca -keyout ca.key -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=chronik -keyout kafka.key -out kafka.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:chronik-1,DNS:chronik-2,DNS:chronik-3\n' > kafka.ext
openssl x509 -req -in kafka.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -out kafka.pem -extfile kafka.ext
chmod 644 kafka.key
echo "made $dir/ca.pem (for clients), $dir/kafka.pem and $dir/kafka.key"
