"""The node's EDF+ recording: samples and annotations, inline or on a writer thread.

In lockstep runs the writes stay inline (nothing waits on them); in the async shell they
run on a ``WriterThread`` in submission order, so an annotation lands where it would
have inline (after the samples that came before it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.core import Annotation
from controller.recorder import EdfRecorder
from controller.writer_thread import WriterThread


class RecordingSink:
    def __init__(self, recorder: EdfRecorder, writer: WriterThread | None = None) -> None:
        self._recorder = recorder
        self._writer = writer
        self.open = True

    @property
    def path(self) -> Path:
        return self._recorder.path

    def write_counts(self, first_index: int, counts: np.ndarray) -> None:
        if self._writer is None:
            self._recorder.write_counts(first_index, counts)
        else:  # the array may be reused by the caller: hand the thread its own copy
            self._writer.submit(self._recorder.write_counts, first_index, counts.copy())

    def annotate(self, annotation: Annotation) -> None:
        if self._writer is None:
            self._annotate(annotation)
        else:
            self._writer.submit(self._annotate, annotation)

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        if self._writer is None:
            self._recorder.close()
        else:
            self._writer.submit(self._recorder.close)
            self._writer.close()

    def _annotate(self, annotation: Annotation) -> None:
        recorder = self._recorder
        if annotation.t_device_s is None:
            recorder.annotate_now(annotation.text)
            return
        origin = recorder.index_origin
        if origin is None:
            return  # nothing recorded yet: there is no time axis to put it on
        t_s = annotation.t_device_s - origin / recorder.sampling_rate_hz
        recorder.annotate(max(0.0, t_s), annotation.text)
