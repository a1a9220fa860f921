# 16 circles, with classifier-free guidance 2 (the model learnt a null class for this), as a PNG grid.
diffsight sample runs/my_images/model --class circles --guidance 2 --n 16 --steps 20 -o circles.png

# Quality: FD and precision/recall on pixel features (no classifier ships for your data), each beside the
# real-versus-real floor at the same number of samples. --update-card writes them into the model card.
diffsight eval runs/my_images/model --n "${EVAL_N:-100}" --update-card
