"""The landmark regressor: models (registry), loss, augmentation, training loop, export, prediction.

Modules: ``models`` (create_model, register_backbone), ``macs`` (count_macs), ``loss``
(wing_mse_loss, WingMSELoss), ``augment`` + ``data`` (LandmarkSamples, make_loader), ``loop``
(run_train, train_from_dataset, load_checkpoint), ``export`` (export_onnx, model_info),
``predict`` (load_predictor, Predictor), and torch-free: ``infer`` (crop rule, OnnxPredictor,
load_any_predictor), ``detect`` (face detector, user boxes), ``photos`` (predict_files,
overlays, safe reading); ``timing`` (interleaved latency, the 3DDFA_V2 baseline).
"""
