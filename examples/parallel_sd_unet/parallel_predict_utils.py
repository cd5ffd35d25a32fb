"""The seed's `parallel_predict_utils.py`, ported to Tandem.

One child process per device (multiprocessing.Process), one Pipe per child, and the seed's five
messages. The flow is the seed's: children are started and built one after the other, then every
predict sends (PREDICT, shard) to each child and collects the (REPLY, result) answers in device
order, until EXIT. Tensors travel pickled through the pipes, as in the seed.

Kept from the seed: the protocol, the serial build, the manual split. Changed so that bad use is
an exception rather than a hang: a child that fails to predict answers ERROR instead of dying,
the parent closes its copies of the children's pipe ends (a dead child gives EOF), every wait
has a timeout, and a failed build stops the children already started.
"""
import logging
import multiprocessing

# The seed forks its children (Linux's default start method). Forking a process whose OpenMP
# runtime is already running (oneDNN's, once the parent has run a model) leaves the child's
# OpenMP pool dead and the child hangs at its first parallel region; "spawn" starts clean
# children and keeps everything else of the seed's design.
_mp = multiprocessing.get_context("spawn")
Pipe, Process = _mp.Pipe, _mp.Process

from tandem_engine import TandemPredict

# define message id
ERROR = 0
PREDICT = 1
REPLY = 2
BUILD_FINISH = 3
EXIT = 4


def predict_process_func(pipe_child_end, model_path, device_id, device_num=1,
                         batch_per_device=1):
    # subprocess init and build model using TandemPredict
    try:
        predict_worker = TandemPredict(model_path, device_id, device_num, batch_per_device)
        pipe_child_end.send((BUILD_FINISH, ""))
    except Exception as e:  # pylint: disable=broad-except
        logging.exception(e)
        pipe_child_end.send((ERROR, str(e)))
        raise
    # model predict in subprocess
    while True:
        msg_type, msg = pipe_child_end.recv()
        if msg_type == EXIT:
            print(f"Receive exit message {msg} and start to exit", flush=True)
            break
        if msg_type != PREDICT:
            raise RuntimeError("Expect to receive EXIT or PREDICT message for child process!")
        inputs = msg
        try:
            result = predict_worker.run(inputs)
        except Exception as e:  # pylint: disable=broad-except
            pipe_child_end.send((ERROR, f"{type(e).__name__}: {e}"))
            continue
        pipe_child_end.send((REPLY, result))


class ParallelPredictUtils:
    """The parent side: starts the children, sends shards, gathers replies, stops the children."""

    def __init__(self, model_path, device_num, batch_per_device=1, timeout=300.0):
        # main process init
        self.model_path = model_path
        self.device_num = device_num
        self.batch_per_device = batch_per_device
        self.timeout = timeout
        self.pipe_parent_end = []
        self.pipe_child_end = []
        self.process = []
        for _ in range(device_num):
            pipe_end_0, pipe_end_1 = Pipe()
            self.pipe_parent_end.append(pipe_end_0)
            self.pipe_child_end.append(pipe_end_1)

    def _recv(self, device_id, what):
        pipe = self.pipe_parent_end[device_id]
        if not pipe.poll(self.timeout):
            raise RuntimeError(f"device {device_id}: no answer to {what} within {self.timeout} s")
        try:
            return pipe.recv()
        except EOFError:
            code = self.process[device_id].exitcode if device_id < len(self.process) else None
            raise RuntimeError(
                f"device {device_id}: child process exited during {what} (exit code {code})"
            ) from None

    def build_model(self):
        for device_id in range(self.device_num):
            # create subprocess
            process = Process(target=predict_process_func,
                              args=(self.pipe_child_end[device_id], self.model_path, device_id,
                                    self.device_num, self.batch_per_device,))
            process.start()
            self.pipe_child_end[device_id].close()  # the child holds it; EOF when it dies
            self.process.append(process)
            try:
                msg_type, msg = self._recv(device_id, "build")
            except RuntimeError:
                self.finalize()
                raise
            if msg_type == ERROR:
                self.finalize()
                raise RuntimeError(f"Failed to build model {device_id}, exception occur: {msg}")
            assert msg_type == BUILD_FINISH
            print(f"Success to build model {device_id}", flush=True)

    def predict(self, inputs):
        # send PREDICT command to subprocess and receive result
        result = []
        for i in range(self.device_num):
            self.pipe_parent_end[i].send((PREDICT, inputs[i]))

        errors = []
        for i in range(self.device_num):  # read every answer so that none is left stale
            msg_type, msg = self._recv(i, "predict")
            if msg_type == ERROR:
                errors.append(f"device {i}: {msg}")
                continue
            assert msg_type == REPLY
            result.append(msg)
        if errors:
            raise RuntimeError(f"Failed to call predict, exception occur: {'; '.join(errors)}")
        return result

    def finalize(self):
        # finalize subprocess
        for i, process in enumerate(self.process):
            if process.is_alive():
                try:
                    self.pipe_parent_end[i].send((EXIT, ""))
                except (BrokenPipeError, OSError):
                    pass
        for process in self.process:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        self.process = []
