# gil-lab's workloads W3 (convoy) and W4 (fairness) for CPython's GIL. Run by gil-lab with
# python3; prints one JSON object. Arguments: W3 seconds, W4 seconds, K list, N list.
import json, os, socket, subprocess, sys, threading, time

w3_secs, w4_secs = float(sys.argv[1]), float(sys.argv[2])
ks = [int(k) for k in sys.argv[3].split(",") if k]
ns = [int(n) for n in sys.argv[4].split(",") if n]
sys.setswitchinterval(0.005)

ECHO = "import os, socket, sys\ns = socket.socket(fileno=int(sys.argv[1]))\nwhile True:\n    b = s.recv(1)\n    if not b: break\n    s.sendall(b)\n"

def unit_loop(stop, out, i):
    # The CPU-bound thread: units of work (one statement each, ~30-60 ns in CPython), with the
    # interpreter's own checkpoint (the eval breaker) between them.
    x, n = 12345 + i, 0
    while not stop[0]:
        for _ in range(1000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        n += 1000
    out[i] = n

def w3(k, io=True):
    """Returns (round trips/s, units/s)."""
    near, far = socket.socketpair()
    echo = None
    if io:
        # The echo side is a separate process: an echo thread would need the GIL itself.
        echo = subprocess.Popen([sys.executable, "-c", ECHO, str(far.fileno())], pass_fds=[far.fileno()])
    far.close()
    stop = [False]
    units = [0] * k
    trips = [0]
    def io_loop():
        n = 0
        while not stop[0]:
            near.sendall(b"x")
            near.recv(1)
            n += 1
        trips[0] = n
    threads = [threading.Thread(target=unit_loop, args=(stop, units, i)) for i in range(k)]
    if io:
        threads.append(threading.Thread(target=io_loop))
        near.sendall(b"x"); near.recv(1)  # the echo process is up
    began = time.perf_counter()
    for t in threads: t.start()
    time.sleep(w3_secs)
    stop[0] = True
    elapsed = time.perf_counter() - began
    for t in threads: t.join()
    near.close()
    if echo: echo.wait()
    return trips[0] / elapsed, sum(units) / elapsed

def w4(n):
    stop = [False]
    began = time.perf_counter()
    units = [0] * n
    worst = [0.0] * n
    lasts = [began] * n
    def run(i):
        x, u, last, w = 99 + i, 0, time.perf_counter(), 0.0
        while not stop[0]:
            for _ in range(100):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            u += 100
            now = time.perf_counter()
            if now - last > w: w = now - last
            last = now
        units[i], worst[i], lasts[i] = u, w, last
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for t in threads: t.start()
    time.sleep(w4_secs)
    stop[0] = True
    end = time.perf_counter()
    for t in threads: t.join()
    return {"n": n, "units": units, "worst_stretch_s": worst, "throughput": sum(units) / (end - began)}

out = {"version": sys.version.split()[0], "w3": {}, "w4": []}
if ks:
    out["w3"]["cpu_alone"] = w3(1, io=False)[1]
    out["w3"]["io_alone"] = w3(0, io=True)[0]
    out["w3"]["runs"] = [{"k": k, "trips": r[0], "units": r[1]} for k in ks for r in [w3(k)]]
if ns:
    out["w4"] = [w4(n) for n in [1] + ns]
print(json.dumps(out))
