#!/bin/bash
# Single-node Ceph Pacific (Debian 12 packages) + radosgw S3 on 127.0.0.1:7480, vstart-style.
# Creates the cluster under $D on first run, then (re)starts mon.a, osd.0 (bluestore on a sparse file)
# and radosgw, and makes sure the S3 user exists. Idempotent; stop with ceph-down.sh.
set -euo pipefail
D=${D:-${S3DIR:?set S3DIR}/ceph}
AK=${S3_ACCESS_KEY:-CIACCESSKEY000000000}
SK=${S3_SECRET_KEY:-CISECRETKEY00000000000000000000000000000}
C="-c $D/ceph.conf"
if [ ! -f "$D/ceph.conf" ]; then
  mkdir -p "$D"/{run,log,mon.a,osd.0,rgw.a}
  FSID=$(uuidgen)
  cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon warn on insecure global id reclaim allowed = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 5
mon max pg per osd = 1000
osd crush chooseleaf type = 0
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
keyring = $D/keyring
[mon.a]
mon data = $D/mon.a
[osd]
osd data = $D/osd.\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
osd memory target = 1073741824
[client.rgw.a]
# radosgw defaults to cephx + secure mon mode; with auth none it must be told crc
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:7480
rgw data = $D/rgw.a
# free space of deleted/overwritten objects within ~1 min instead of 2 h
rgw gc obj min wait = 60
rgw gc processor period = 60
CONF
  touch "$D/keyring"
  monmaptool --create --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' --fsid "$FSID" "$D/monmap" >/dev/null
  ceph-mon $C --mkfs -i a --monmap "$D/monmap"
  NEW=1
fi
nohup ceph-mon $C -i a -f >> "$D/log/mon.a.out" 2>&1 & echo $! > "$D/run/mon.daemon.pid"
timeout 60 ceph $C mon stat >/dev/null
if [ "${NEW:-0}" = 1 ]; then
  U=$(uuidgen); ID=$(timeout 60 ceph $C osd new "$U")
  ceph-osd $C -i "$ID" --mkfs --osd-uuid "$U" > "$D/log/osd.mkfs.out" 2>&1
fi
nohup ceph-osd $C -i 0 -f >> "$D/log/osd.0.out" 2>&1 & echo $! > "$D/run/osd.daemon.pid"
for i in $(seq 1 120); do timeout 10 ceph $C osd stat 2>/dev/null | grep -q '1 up' && break; sleep 0.5; done
nohup radosgw $C -n client.rgw.a -f >> "$D/log/rgw.a.out" 2>&1 & echo $! > "$D/run/rgw.daemon.pid"
for i in $(seq 1 240); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7480/)" = 200 ] && break; sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7480/)" = 200 ] || { echo "radosgw not answering" >&2; exit 1; }
if ! radosgw-admin $C user info --uid=ci >/dev/null 2>&1; then
  radosgw-admin $C user create --uid=ci --display-name=ci --access-key="$AK" --secret-key="$SK" >/dev/null
fi
echo "S3 ready on http://127.0.0.1:7480 (access key $AK)"
