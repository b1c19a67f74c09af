"""Cold/warm start: run twice with the same empty NUMBA_CACHE_DIR (see README)."""
import time; t0=time.perf_counter()
import numpy as np, fastgrad
t1=time.perf_counter()
net = fastgrad.MLP([4,5,3]); p = net.init(0); rng=np.random.default_rng(0)
X=rng.normal(size=(8,4)); Y=rng.uniform(size=(8,3))
r = fastgrad.check(net,p,X,Y)
t2=time.perf_counter()
print(f"import {t1-t0:.2f} s, first check {t2-t1:.2f} s, total {t2-t0:.2f} s")
