"""What the routing mesh's continuity test and ``bench/swarm_net.py --mesh`` run: a task's server
that stops at once on SIGTERM, and a client that requests through the mesh in a loop."""

# httpd on 80 answers its container's hostname; an echo on 81 says the hostname, then echoes;
# SIGTERM ends the container at once (its shell, PID 1, exits), as a well-behaved server does --
# busybox's httpd as PID 1 would ignore it and run on for the grace period, hiding any loss
SERVE = ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html; "
         "(nc -ll -p 81 -e sh -c 'hostname; exec cat' &); trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]

# requests through the mesh, one after the other, until the stop file appears: a JSON summary
REQUESTER = r'''
import json, os, socket, sys, time
host, port, stop, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ok, failed, served, slow = 0, [], {}, []
t0 = time.monotonic()
while not os.path.exists(stop):
    t = time.monotonic()
    try:
        c = socket.create_connection((host, port), timeout=timeout)
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        c.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
            raise OSError(f"answer: {head[:40]!r}")
        name = body.decode().strip()
        served[name] = served.get(name, 0) + 1
        ok += 1
        if time.monotonic() - t > 0.5:
            slow.append([round(t - t0, 3), round(time.monotonic() - t, 3)])
    except OSError as exc:
        failed.append([round(t - t0, 3), f"{type(exc).__name__}: {exc}"])
    time.sleep(0.02)
print(json.dumps({"ok": ok, "failed": failed, "served": served, "slow": slow,
                  "seconds": time.monotonic() - t0}))
'''
