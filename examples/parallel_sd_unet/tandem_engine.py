"""The seed's `mslite_engine.py` (class MSLitePredict), ported to Tandem.

One model on one device. Where MindSpore Lite targets an Ascend chip by `device_id`, Tandem's CPU
"device i" is the i-th equal share of the host's cores. The seed converts the model offline with
`converter_lite --inputShape="sample:1,4,64,64;timestep:1;encoder_hidden_states:1,77,1024"`;
here the ONNX file is built directly and `model.resize` fixes the same per-device shapes.
"""
import os

import tandem


def device_cores(device_id, device_num):
    """The cores of CPU device `device_id` when the host's cores are split over `device_num`."""
    cores = sorted(os.sched_getaffinity(0))
    per = max(1, len(cores) // device_num)
    start = (device_id * per) % len(cores)
    return cores[start:start + per]


class TandemPredict:
    """Builds the model for one device; run() predicts one shard (a list of numpy arrays)."""

    def __init__(self, model_file, device_id, device_num=1, batch_per_device=1):
        # init and set context
        context = tandem.Context()
        context.target = ["cpu"]
        context.cpu.core_list = device_cores(device_id, device_num)
        context.cpu.thread_num = len(context.cpu.core_list)
        # create Model and build Model
        self.model = tandem.Model()
        self.model.build_from_file(model_file, tandem.ModelType.ONNX, context)
        # what converter_lite's --inputShape does in the seed: fix the per-device batch
        inputs = self.model.get_inputs()
        shapes = [[batch_per_device if d < 0 else d for d in t.shape] for t in inputs]
        self.model.resize(inputs, shapes)

    def run(self, input_data):
        # set model input
        inputs = self.model.get_inputs()
        for i, _input in enumerate(inputs):
            _input.set_data_from_numpy(input_data[i])
        # execute inference
        outputs = self.model.predict(inputs)
        return [output.get_data_to_numpy() for output in outputs]


MSLitePredict = TandemPredict  # the seed's name
