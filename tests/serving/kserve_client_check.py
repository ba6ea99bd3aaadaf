"""Run by the kserve venv's Python: drive a V2 server with KServe's own REST client.

Usage: python kserve_client_check.py BASE_URL MODEL ROWS_JSON
Prints one JSON object: liveness/readiness as the client reads them and the predictions it
decoded, for JSON and for binary tensor inputs. The test compares them with model.predict.
"""

import asyncio
import json
import sys


async def main(base: str, name: str, rows_json: str) -> None:
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    rows = np.array(json.loads(rows_json), dtype=np.float64)
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        out = {"live": await client.is_server_live(base),
               "ready": await client.is_server_ready(base),
               "model_ready": await client.is_model_ready(base, name)}
        for binary in (False, True):
            tensor = InferInput("input-0", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            headers: dict[str, str] = {}
            result = await client.infer(base, InferRequest(model_name=name,
                                                           infer_inputs=[tensor]),
                                        model_name=name, response_headers=headers)
            # the client's InferResponse drops model_version; the revision header survives
            out[f"binary={binary}"] = {"model_name": result.model_name,
                                       "revision": headers.get("seaway-model-revision"),
                                       "predict": result.outputs[0].as_numpy().tolist()}
    finally:
        await client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
