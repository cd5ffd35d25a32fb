"""The same job as main.py with tandem.ParallelPredictor: split, gather and check in ten lines."""
import sys, time, numpy as np, tandem  # noqa: E401
from main import make_inputs, model_path, one_device_reference

inputs = make_inputs(batch=2)
with tandem.ParallelPredictor(model_path, devices="cpu:0,cpu:1", verbose=True) as predictor:
    start = time.time()
    outputs = predictor.predict(inputs)  # the batch is split across the devices and gathered
    print("Total predict time = ", time.time() - start, flush=True)
diff = max(float(np.abs(o - r).max()) for o, r in zip(outputs, one_device_reference(model_path, inputs)))
print(f"max abs difference vs one batch-2 run: {diff:.3g}")
print("=========== success ===========" if diff <= 1e-5 else "=========== failure ===========")
sys.exit(0 if diff <= 1e-5 else 1)
