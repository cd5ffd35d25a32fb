"""The seed's `main.py`, ported to Tandem: the flagship UNet on two CPU devices.

A batch of 2 is split along the batch axis into two single-item shards (`timestep` is shared),
each child process predicts its shard, and the parent concatenates the two results and checks
them against one batch-2 run on a single device.

    PYTHONPATH=build/python /usr/bin/python3 examples/parallel_sd_unet/main.py
"""
import argparse
import os
import sys
import time

import numpy as np

from parallel_predict_utils import ParallelPredictUtils

HERE = os.path.dirname(os.path.abspath(__file__))
model_path = os.path.join(HERE, "..", "..", "models", "sd_unet_tiny", "model.onnx")
device_num = 2


def make_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    sample = rng.standard_normal((batch, 4, 64, 64), dtype=np.float32)
    timestep = np.array([981], dtype=np.float32)
    encoder_hidden_states = rng.standard_normal((batch, 77, 1024), dtype=np.float32)
    return sample, timestep, encoder_hidden_states


def one_device_reference(path, inputs):
    import tandem  # pylint: disable=import-outside-toplevel
    model = tandem.Model()
    model.build_from_file(path, tandem.ModelType.ONNX, tandem.Context())
    return [t.get_data_to_numpy() for t in model.predict(list(inputs))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=model_path)
    parser.add_argument("--device-num", type=int, default=device_num)
    parser.add_argument("--batch", type=int, default=2, help="a multiple of --device-num")
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args()
    if args.batch % args.device_num:
        parser.error("the seed's split needs the batch to be a multiple of the device count")
    per = args.batch // args.device_num

    sample, timestep, encoder_hidden_states = make_inputs(args.batch)
    # data slice (the seed passes sample[i], dropping the batch axis: Tandem's
    # set_data_from_numpy checks shapes, so each shard keeps its batch axis)
    input_data_all = [[sample[i * per:(i + 1) * per], timestep,
                       encoder_hidden_states[i * per:(i + 1) * per]]
                      for i in range(args.device_num)]

    parallel_utils = ParallelPredictUtils(args.model, args.device_num, per)
    parallel_utils.build_model()
    try:
        start = time.time()
        predict_result = parallel_utils.predict(input_data_all)
        print("Total predict time = ", time.time() - start, flush=True)
    finally:
        parallel_utils.finalize()

    if args.no_check:
        print("=========== success ===========")
        return 0
    # the concatenated shards must equal one batch run on one device
    gathered = [np.concatenate([r[o] for r in predict_result]) for o in range(len(predict_result[0]))]
    reference = one_device_reference(args.model, (sample, timestep, encoder_hidden_states))
    diff = max(float(np.abs(g - r).max()) for g, r in zip(gathered, reference))
    print(f"max abs difference vs one batch-{args.batch} run: {diff:.3g}")
    if diff <= 1e-5:
        print("=========== success ===========")
        return 0
    print("=========== failure: concatenated result differs from one batch run ===========")
    return 1


if __name__ == "__main__":
    sys.exit(main())
