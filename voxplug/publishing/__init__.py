"""Publishing models and datasets (local folder, the Hub) and deploying demos (Spaces)."""
