"""Only predict_fn: the server's own codecs decode the request and encode the response."""


def predict_fn(data, model, context):
    context.response_headers["x-predicted-by"] = "predict_fn"
    return model.predict(data)
