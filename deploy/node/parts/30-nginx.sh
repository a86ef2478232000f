#!/usr/bin/env bash
# Node part: nginx with one server block per account in /etc/nginx/hostwright/sites
# (written by the node agent, each checked on its own before one reload), a default server that
# answers 404 for unknown names, and the page suspended accounts show.
set -euo pipefail
source "$HW_NODE_LIB"

install -d -m 0755 /etc/nginx/hostwright /etc/nginx/hostwright/sites /var/lib/hostwright/suspended
rm -f /etc/nginx/sites-enabled/default

hw_install_file /etc/nginx/conf.d/hostwright.conf 0644 >/dev/null <<'CONF'
# Managed by Hostwright (deploy/node/parts/30-nginx.sh).
# Long customer domain names need bigger server name hash buckets.
server_names_hash_bucket_size 256;
server_names_hash_max_size 8192;
server {
    listen 80 default_server;
    server_name _;
    include /etc/nginx/snippets/hostwright-acme*.conf;
    location / { return 404; }
}
include /etc/nginx/hostwright/sites/*.conf;
CONF

# What every account's server block relies on, set once at the http level (a file of its own:
# the node agent's check of one server block includes it, see hwagent/_nginx.py). Repeated in
# each block, the FastCGI parameters and a regex location for hidden files were most of what a
# reload parses and most of the memory a block holds on a node with many sites.
hw_install_file /etc/nginx/conf.d/hostwright-http.conf 0644 >/dev/null <<'CONF'
# Managed by Hostwright (deploy/node/parts/30-nginx.sh).
# FastCGI parameters for every location that passes to PHP-FPM without setting its own.
include /etc/nginx/fastcgi_params;
fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
# A hidden file or folder (a name starting with a dot), except .well-known: sites refuse it.
map $uri $hw_hidden {
    default 0;
    "~/\.(?!well-known)" 1;
}
CONF

hw_install_file /var/lib/hostwright/suspended/index.html 0644 >/dev/null <<'PAGE'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Account suspended</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#333}</style>
</head><body>
<h1>This account is suspended</h1>
<p>The website on this address is temporarily unavailable. If it is yours, please log in to
your hosting control panel or contact support to restore it.</p>
</body></html>
PAGE

nginx -t -q
if hw_have_systemd; then
  systemctl enable --now nginx >/dev/null 2>&1 || true
  systemctl reload nginx
elif hw_pid_alive /run/nginx.pid; then
  nginx -s reload
else
  hw_daemon nginx nginx
fi
hw_wait_port 80 || { echo "30-nginx: nginx does not answer on port 80" >&2; exit 1; }
echo "30-nginx: nginx serves /etc/nginx/hostwright/sites"
