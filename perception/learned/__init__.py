"""The learned networks: the Siamese change model, its training, ONNX export and onnxruntime inference."""
