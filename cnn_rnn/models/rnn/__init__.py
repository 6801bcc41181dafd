"""Recurrent networks, one concern per module.

cells.py         the equations of one step: ElmanCell (tanh/relu), LSTMCell, GRUCell
initializers.py  recurrent weight init: default, orthogonal, identity (IRNN)
scan.py          engines that run a cell over time: run_cell, remat, batch groups, flat_step
cudnn.py         the LSTM through cuDNN, with the scan path's parameters
layer.py         RNN(cell): stacked, bidirectional, masked, with the dL/dh_t hook
models.py        the registered models (rnn, irnn, lstm, gru) and `register_cell`
"""

from cnn_rnn.models.rnn.cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from cnn_rnn.models.rnn.layer import RNN, ScanOptions, StatesHook
from cnn_rnn.models.rnn.models import CELLS, RecurrentModel, register_cell

__all__ = ["CELLS", "RNN", "ElmanCell", "GRUCell", "LSTMCell", "RecurrentCell", "RecurrentModel",
           "ScanOptions", "StatesHook", "register_cell"]
