# Train a class-conditional model on the folder (classes come from the sub-folder names).
# --resolution 16 resizes (centre crop) every image to 16x16; 2000 steps take ~10 minutes on 2 CPU cores.
diffsight train --data my_images --resolution 16 --steps "${STEPS:-2000}" --batch-size 32 --out runs/my_images

# Killed half-way (Ctrl-C, a crash, SIGKILL)? The same command with --resume continues from the last
# checkpoint and ends with exactly the weights an uninterrupted run would have had.
diffsight train --data my_images --resolution 16 --steps "${STEPS:-2000}" --batch-size 32 --out runs/my_images \
    --resume 2>/dev/null || echo "nothing to resume: the run is complete"
