"""Compute profile of an upstream: parameters, MACs and latency, under the field's conventions.

One concept per module: :mod:`~superb_redundancy.compute.parameters`, :mod:`~superb_redundancy.compute.macs`,
:mod:`~superb_redundancy.compute.latency`, :mod:`~superb_redundancy.compute.profile` (the whole profile: the
request and its checks, the run, the tables) and :mod:`~superb_redundancy.compute.inputs` (clip lengths, lengths
files, devices, :class:`ProfileError`). Import each name from its module (this ``__init__`` loads nothing).

Every number states what it counts:

* **Parameters** (:func:`count_parameters`). ``total`` is every parameter tensor the upstream holds, each
  shared tensor once: for wav2vec2 and HuBERT experts this is the number the SUPERB leaderboard reports
  (95.04 M / 94.70 M for the Base models), since s3prl's expert keeps the pretraining-only modules the released
  checkpoints carry. ``inference`` leaves out the modules a forward pass never touches (:data:`PRETRAINING_ONLY`:
  quantizer, project_q, final_proj, label_embs_concat, mask_emb, target_glu): 94.37 M for both Base models;
  and DistilHuBERT's prediction heads (output_layer), which s3prl's expert runs but neither the paper's
  downstream evaluation (its last layer) nor SUPERB's 23.49 M count uses.
  ``stack`` is the transformer layers (``encoder.layers.N``); ``rest`` = ``total - stack`` (CNN, feature
  projection, positional convolution, encoder LayerNorm, heads). For a pruned upstream, pass its base's counts
  to get the removed share with the denominator in the key (``removed_share_of_base_total``, ...).
* **MACs** (:func:`count_macs`, :func:`macs_per_lengths`): :class:`torch.utils.flop_counter.FlopCounterMode`
  FLOPs / 2, batch size 1, one clip per length, the upstream's whole forward (CNN included). It counts matrix
  products and convolutions (``mm``, ``addmm``, ``bmm``, ``baddbmm``, convolutions, scaled-dot-product
  attention); :mod:`~superb_redundancy.compute.macs` adds the formula for
  ``_scaled_dot_product_flash_attention_for_cpu``, the kernel scaled-dot-product attention takes on CPU, which
  torch's table lacks (without it attention scores and the attention-weighted sum, 2·T²·d MACs per layer, go
  uncounted on CPU but not on GPU). Not counted: element-wise
  ops (activations, residual adds, bias adds, dropout), normalisations (GroupNorm, LayerNorm), softmax,
  weight-norm reparametrisation and embedding look-ups (WavLM's relative-position buckets): well under 1% of
  the total for these models. The SUPERB leaderboard's convention is the sum over 32 LibriSpeech test-clean
  utterances at batch 1 (:func:`macs_per_lengths` with a lengths file).
* **Latency** (:func:`measure_latency`): batch 1, after warm-up, median and inter-quartile range of the
  forward pass under ``torch.inference_mode``, with the thread count and device it ran on; CUDA events on GPU,
  ``time.perf_counter`` on CPU. Real-time factor = median latency / audio seconds.

s3prl quirk worth knowing: wav2vec2 and HuBERT configs default to ``required_seq_len_multiple=2``, so the
transformer runs on the frame count rounded up to even (50 frames for 1 s of audio, not 49); the padding is
cut from ``hidden_states`` afterwards. MACs here are those of what actually runs. WavLM does not pad.
"""
